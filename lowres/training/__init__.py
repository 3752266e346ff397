"""Training parts beyond SpeechBrain's ``Brain``: LR schedules."""

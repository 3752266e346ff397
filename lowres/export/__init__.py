"""Handing a trained run on: a SpeechBrain pretrained-model folder, an ONNX embedder.

    python -m lowres.export RUN --out DIR [--checkpoint best|last]   # SpeechBrain folder
    python -m lowres.export RUN --onnx DIR/embedding_model.onnx      # ONNX embedder

- ``run``: what an export reads from a run folder (model at a checkpoint, results, stats).
- ``speechbrain_folder``: the folder ``EncoderClassifier.from_hparams`` loads.
- ``model_card``: its README.md, written from the run.
- ``onnx``: waveform-in, embedding-out ONNX graph, checked with onnxruntime.
"""

"""Training and validation data over the prepared manifests."""

"""[Scale] Training past one device: embedding tables sharded across ranks (TorchRec, optional extra)."""

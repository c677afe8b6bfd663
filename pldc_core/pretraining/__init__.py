"""Pretraining on the upstream corpus: the embedded stand-ins for ImageNet and web-CLIP weights."""

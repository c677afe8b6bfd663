"""The segmentation model: Mask2Former built from the config, and inference on raw images."""

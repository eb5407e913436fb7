"""DIOD model: ResNet-18 (or frozen DINOv2) + ConvGRU encoder, slot attention with a background
slot, transposed-convolution decoder. Plain PyTorch, no Ray."""

from diod_ray.model.diod import DIODModel, ModelOutput, ModelState, build_model

__all__ = ["DIODModel", "ModelOutput", "ModelState", "build_model"]

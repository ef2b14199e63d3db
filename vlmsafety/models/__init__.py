"""Model families (one module each) and loading; importing this registers the shipped families."""

from vlmsafety.models import llava, llava_next, mllama, qwen2_vl  # noqa: F401
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings, get_family, register_family

__all__ = ["FamilyAdapter", "Generation", "GenerationSettings", "get_family", "register_family"]

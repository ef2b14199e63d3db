"""Model families (one module each) and loading; importing this registers the shipped families."""

from vlmsafety.models import llava  # noqa: F401
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings, get_family, register_family

try:  # the Mllama family lands in its own module
    from vlmsafety.models import mllama  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["FamilyAdapter", "Generation", "GenerationSettings", "get_family", "register_family"]

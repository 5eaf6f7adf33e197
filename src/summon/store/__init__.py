"""The local image store (an OCI image layout), tags, and unpacked root filesystems."""

from summon.store.layout import Descriptor, Store, canonical_json, normalize_ref

__all__ = ["Descriptor", "Store", "canonical_json", "normalize_ref"]

"""The config of MinHash LSH near-duplicate removal (tasks/clean/minhash.py).

Kept apart from minhash.py, whose numpy, pyarrow, regex and xxhash cost ~0.13 CPU-s to import: loading a
pipeline config must not pay for them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NearDedupConfig(BaseModel):
    """MinHash LSH near-duplicate removal (defaults: FineWeb, Penedo et al. 2024: 5-grams, 14 bands x 8 rows)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Drop near-duplicates within the snapshot and of the parent snapshot."""
    num_bands: int = Field(default=14, ge=1, le=512)  # FineWeb: 14 buckets
    """LSH bands; documents sharing all rows of any one band are candidates."""
    rows_per_band: int = Field(default=8, ge=1, le=64)  # FineWeb: 8 hashes per bucket
    """MinHash values per band; the signature has num_bands * rows_per_band values."""
    ngram: int = Field(default=5, ge=1, le=32)  # FineWeb and Gopher: word 5-grams
    """Words per shingle; a document with fewer words is one shingle."""
    seed: int = Field(default=1, ge=0, lt=2**32)  # datatrove's default seed
    """Seed of the hash permutations; signatures are only comparable under the same seed."""
    jaccard_threshold: float | None = Field(default=None, ge=0.0, le=1.0)  # FineWeb: None (no verification)
    """If set, a candidate pair is merged only when its estimated Jaccard similarity is at least this."""

    @property
    def num_hashes(self) -> int:
        """Signature length."""
        return self.num_bands * self.rows_per_band

    @property
    def threshold(self) -> float:
        """Jaccard similarity at which a pair becomes a candidate with probability ~1/2: (1/b)^(1/r)."""
        return (1.0 / self.num_bands) ** (1.0 / self.rows_per_band)

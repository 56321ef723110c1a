"""What every data set hands the trainer: standardised images, float membrane labels."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from skipexp.data.augment import Augmenter


def standardise(image: np.ndarray) -> np.ndarray:
    """Per-image standardisation (docs/data.md): zero mean, unit variance over all pixels and channels."""
    image = image.astype(np.float32)
    return (image - image.mean()) / max(float(image.std()), 1e-6)


class SegmentationSet(Dataset):
    """Samples {image C x H x W, label 1 x H x W (1 = membrane), valid 1 x H x W (1 = scored)}.

    Augmented and cropped when ``augment`` is given; without valid masks every pixel is scored.
    Indexed by ``i`` or by ``(i, key)`` from a ``SampleStream``: the key seeds that sample's augmentation.
    """

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], valids: list[np.ndarray] | None = None,
                 augment: Augmenter | None = None) -> None:
        if len(images) != len(labels) or (valids is not None and len(valids) != len(images)):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = [torch.from_numpy(standardise(im)) for im in images]
        self.labels = [torch.from_numpy(lb.astype(np.float32)[None]) for lb in labels]
        self.valids = None if valids is None else [torch.from_numpy(v.astype(np.float32)[None]) for v in valids]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, key = index if isinstance(index, tuple) else (index, None)
        image, label = self.images[index], self.labels[index]
        valid = torch.ones_like(label) if self.valids is None else self.valids[index]
        if self.augment is not None:
            generator = None if key is None else torch.Generator().manual_seed(key)
            image, label, valid = self.augment(image, label, valid, generator)
        return {"image": image, "label": label, "valid": valid}


def stream_key(*parts: int) -> int:
    """A 63-bit seed from integers such as (seed, epoch, position), well mixed (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class SampleStream(Sampler):
    """The training sample stream: ``(index, key)`` pairs, ``per_epoch`` of them each epoch.

    An epoch concatenates fresh permutations of the ``n`` samples (as many as
    ``per_epoch`` needs) drawn from a generator seeded by (seed, epoch); every
    position gets its own augmentation key. The stream is a pure function of
    (seed, epoch), so worker processes, ranks and resumed runs all see the same
    samples with the same augmentation. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, n: int, per_epoch: int, seed: int) -> None:
        self.n, self.per_epoch, self.seed, self.epoch = n, per_epoch or n, seed, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(stream_key(self.seed, self.epoch))
        order = torch.cat([torch.randperm(self.n, generator=generator)
                           for _ in range(math.ceil(self.per_epoch / self.n))])[: self.per_epoch]
        for position, index in enumerate(order.tolist()):
            yield index, stream_key(self.seed, self.epoch, position)


class ShardedBatches(Sampler):
    """Global batches of a sample stream, of which this process takes its share (all of it when alone)."""

    def __init__(self, stream: SampleStream, batch_size: int, shard) -> None:
        self.stream, self.batch_size, self.shard = stream, batch_size, shard
        self._skip = 0

    def __len__(self) -> int:
        return math.ceil(len(self.stream) / self.batch_size)

    def skip_next(self, batches: int) -> None:
        """Let the next pass start after its first ``batches`` batches (a run resumed mid-epoch)."""
        self._skip = batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        skip, self._skip = self._skip, 0
        batch: list[tuple[int, int]] = []
        count = 0
        for item in self.stream:
            batch.append(item)
            if len(batch) == self.batch_size:
                count += 1
                if count > skip:
                    yield self.shard(batch)
                batch = []
        if batch and count + 1 > skip:
            yield self.shard(batch)


def pad_collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch, padding smaller ones at the bottom/right with valid = 0 (not scored)."""
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)
    batch = {}
    for key in samples[0]:
        batch[key] = torch.stack([F.pad(s[key], (0, width - s[key].shape[-1], 0, height - s[key].shape[-2]))
                                  for s in samples])
    return batch


@dataclass
class RawSplits:
    """What a data-set reader returns, before standardisation and augmentation.

    Images are C x H x W arrays of raw values (any numeric dtype); labels are
    H x W uint8 with 1 = membrane, 0 = not membrane; valid masks (optional, one
    per image or None) are H x W uint8 with 1 = scored, 0 = ignored by loss and
    metrics. Image sizes may differ between images.
    """

    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]
    predict_images: list[np.ndarray]
    predict_names: list[str]  # file stem per prediction image, for writing one map per input where sizes differ
    train_valid: list[np.ndarray] | None = None
    val_valid: list[np.ndarray] | None = None


@dataclass
class DataSplits:
    """The data a run needs: training and validation sets, and the stack ``mode=predict`` writes maps for."""

    train: SegmentationSet
    val: SegmentationSet
    predict_images: list[np.ndarray]  # raw C x H x W images, standardised at prediction time
    predict_names: list[str]
    name: str
    in_channels: int

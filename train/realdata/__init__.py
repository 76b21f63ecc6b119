"""Real RGB-D recordings (Biwi Kinect Head Pose, generic folders) converted into facedepth datasets.

    python -m train.realdata {biwi,folder} SRC --out DIR [--shard-size 64] [--split train|val|test]

A source lists `FrameRef`s and loads each as a `Sample` (depth registered to the colour frame);
`convert` writes them as identity-disjoint shards through `DatasetIndex`.
"""

from train.realdata.common import FrameRef, RealDataError

__all__ = ["FrameRef", "RealDataError"]

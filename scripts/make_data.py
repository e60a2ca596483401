"""Write seeded synthetic prediction shards.

python scripts/make_data.py binary example-data/binary --rows 200000 --shards 12
python scripts/make_data.py multiclass example-data/multiclass --rows 100000 --shards 10 --classes 10
python scripts/make_data.py ranking example-data/ranking --rows 1000000 --shards 10 (10 items per query)
python scripts/make_data.py segmentation example-data/masks --rows 2000 --shards 10 --classes 21 --row-group-rows 64
"""

from __future__ import annotations

import argparse

from pipelines.synthetic import write_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("binary", "multiclass", "text", "image", "segmentation", "ranking"))
    parser.add_argument("directory")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--row-group-rows", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="segmentation: masks are size x size")
    parser.add_argument("--encoding", choices=("bytes", "pixels", "png"), default="bytes", help="segmentation masks")
    args = parser.parse_args()
    paths = write_shards(
        args.directory,
        args.kind,
        args.rows,
        args.shards,
        seed=args.seed,
        num_classes=args.classes,
        row_group_rows=args.row_group_rows,
        size=args.size,
        encoding=args.encoding,
    )
    print(f"wrote {len(paths)} shards, {args.rows} rows, to {args.directory}")


if __name__ == "__main__":
    main()

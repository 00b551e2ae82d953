"""Class lists: ``config.data.classes`` keeps only some classes of a tfds or folder dataset.

A class list is "" (every class), "imagenet100" (the 100 WordNet ids below) or a text file with
one class name per line (``#`` starts a comment; local or gs://). The kept classes are relabelled
0..K-1 in *sorted* name order, the order torchvision's ``ImageFolder`` gives a folder copy, so a
folder and a tfds view of the same classes agree.

ImageNet-100 is the subset of Tian, Krishnan and Isola, "Contrastive Multiview Coding" (2019):
``IMAGENET100_WNIDS`` is ``imagenet100.txt`` of the authors' repository (github.com/HobbitLong/
CMC), in that file's order; other public code (solo-learn, several ImageNet-100 loaders) ships the
same list id for id. LooC and the MoCo/CMC follow-ups pretrain on it: 126,689 training and 5,000
validation images (50 per class). It is a Python constant, not a data file, so that it ships with
any install of the package.
"""

from __future__ import annotations

from leave_one_out.data import DataError
from leave_one_out.data.pipeline import tf_data

IMAGENET100_WNIDS: tuple[str, ...] = (
  "n02869837",
  "n01749939",
  "n02488291",
  "n02107142",
  "n13037406",
  "n02091831",
  "n04517823",
  "n04589890",
  "n03062245",
  "n01773797",
  "n01735189",
  "n07831146",
  "n07753275",
  "n03085013",
  "n04485082",
  "n02105505",
  "n01983481",
  "n02788148",
  "n03530642",
  "n04435653",
  "n02086910",
  "n02859443",
  "n13040303",
  "n03594734",
  "n02085620",
  "n02099849",
  "n01558993",
  "n04493381",
  "n02109047",
  "n04111531",
  "n02877765",
  "n04429376",
  "n02009229",
  "n01978455",
  "n02106550",
  "n01820546",
  "n01692333",
  "n07714571",
  "n02974003",
  "n02114855",
  "n03785016",
  "n03764736",
  "n03775546",
  "n02087046",
  "n07836838",
  "n04099969",
  "n04592741",
  "n03891251",
  "n02701002",
  "n03379051",
  "n02259212",
  "n07715103",
  "n03947888",
  "n04026417",
  "n02326432",
  "n03637318",
  "n01980166",
  "n02113799",
  "n02086240",
  "n03903868",
  "n02483362",
  "n04127249",
  "n02089973",
  "n03017168",
  "n02093428",
  "n02804414",
  "n02396427",
  "n04418357",
  "n02172182",
  "n01729322",
  "n02113978",
  "n03787032",
  "n02089867",
  "n02119022",
  "n03777754",
  "n04238763",
  "n02231487",
  "n03032252",
  "n02138441",
  "n02104029",
  "n03837869",
  "n03494278",
  "n04136333",
  "n03794056",
  "n03492542",
  "n02018207",
  "n04067472",
  "n03930630",
  "n03584829",
  "n02123045",
  "n04229816",
  "n02100583",
  "n03642806",
  "n04336792",
  "n03259280",
  "n02116738",
  "n02108089",
  "n03424325",
  "n01855672",
  "n02090622",
)

# The number of images of each split of imagenet2012 (and of the ImageNet-C validation split)
# that belong to these classes.
IMAGENET100_SPLIT_SIZES: dict[str, int] = {"train": 126_689, "validation": 5_000}

assert len(IMAGENET100_WNIDS) == len(set(IMAGENET100_WNIDS)) == 100


def class_list(spec: str) -> tuple[str, ...] | None:
  """The classes named by ``data.classes``: None (all), the ImageNet-100 list, or a file's lines."""
  if not spec:
    return None
  if spec == "imagenet100":
    return IMAGENET100_WNIDS
  tf = tf_data.tf()
  if not tf.io.gfile.exists(spec):
    raise DataError(
      f"config.data.classes={spec!r} is neither 'imagenet100' nor an "
      "existing text file (one class name per line)"
    )
  with tf.io.gfile.GFile(spec) as f:
    names = [line.strip() for line in f.read().splitlines()]
  names = [n for n in names if n and not n.startswith("#")]
  if not names:
    raise DataError(f"config.data.classes: {spec} lists no class names")
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise DataError(f"config.data.classes: {spec} lists {duplicates[:5]} more than once")
  return tuple(names)


def class_mismatch(where: str, missing, available) -> DataError:
  """The error for requested classes that ``where`` does not have."""
  example = ", ".join(sorted(available)[:3])
  return DataError(
    f"class list mismatch: {len(missing)} of the requested classes are not in {where}, e.g. "
    f"{', '.join(sorted(missing)[:5])}; its classes look like {example} "
    f"({len(available)} in all). Check config.data.classes (and, for ImageNet-100, that the "
    "dataset labels are ImageNet WordNet ids)."
  )

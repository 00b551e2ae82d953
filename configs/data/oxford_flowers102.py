"""VGG Flowers-102 (tfds oxford_flowers102): few-shot transfer (5 and 10 shots per class).

102 flower classes; the official split has 1,020 train, 1,020 validation (10 per class each) and
6,149 test images. The paper's protocol (docs/method.md): frozen features, per trial K images per
class drawn from the pool, a linear classifier (Adam, lr 0.03, 250 iterations), test accuracy
over 10 trials (mean and 95% CI). The pool is train+validation, 20 images per class: with
``train`` alone (10 per class) every 10-shot trial would draw the same images. The linear probe
and kNN train on the same 2,040 images; every number is on test. Prepare once (about 330 MB):
tfds build oxford_flowers102 --data_dir=<dir>.
"""

from leave_one_out import data


def get_config(arg=None):
  del arg
  d = data.default_config()
  d.name = "oxford_flowers102"
  d.data_dir = ""
  d.train_split = "train+validation"  # the few-shot pool: 20 per class
  d.eval_split = "test"
  d.image_size = 256
  d.eval_crop_fraction = 0.875
  return d

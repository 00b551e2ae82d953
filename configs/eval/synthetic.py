r"""Evaluation on the embedded dataset (leave_one_out.synthetic), sized for a CPU.

Command (from the repository root, after a pretraining run in /tmp/looc_demo):

  python -m leave_one_out.evaluate --workdir=/tmp/looc_demo --config=configs/eval/synthetic.py

Hardware: 2 CPU cores. Expected runtime: about 1-2 minutes for the demo model (quarter-width
ResNet-10, 32 px, LooC with spaces colour and rotation), most of it compilation; features are
extracted once per image set. Writes <workdir>/evaluation.json and <workdir>/sensitivity.png and
prints one table (rows: feature kinds; columns: tasks).

Every field is listed below with its meaning; this equals ``evaluate.default_config()``.
Override any of them on the command line, e.g. ``--config.corruption.enabled=False`` or
``--config.dataset.num_train=4000``.
"""

from leave_one_out import corruptions
from leave_one_out import evaluate


def get_config(arg=None):
  del arg
  c = evaluate.default_config()
  c.seed = 0  # held-out split of the probes, few-shot draws, corruption noise, sensitivity views
  c.step = -1  # checkpoint step to evaluate; -1 = the newest in the workdir
  c.encoder = "online"  # online (query encoder, as MoCo evaluates) | ema (momentum key encoder)
  c.kinds = ()  # feature kinds (table rows); () = backbone, looc++ (LooC++ only), space:i
  #               (LooC++ only; for LooC they all equal the backbone) and embedding:i
  c.batch_size = 256  # images per forward pass, rounded up to a multiple of the device count
  c.results_file = "evaluation.json"  # written in the workdir
  c.heatmap_file = "sensitivity.png"  # the augmentation-sensitivity heatmap, in the workdir

  # Images and labels. A source is a function in evaluate.DATASET_SOURCES: "synthetic" (this
  # file) or "data" (a tfds dataset or an image folder, configs/eval/tfds.py and folder.py).
  c.dataset.name = "synthetic"
  c.dataset.num_train = 2000  # training split: probe/kNN/few-shot training set
  c.dataset.num_test = 1000  # test split: every reported accuracy
  c.dataset.image_size = 0  # side of the generated images; 0 = the pretraining data.image_size
  #                           (images are then resized to the model's augment.image_size)
  c.dataset.seed = -1  # dataset seed; -1 = the pretraining seed (train and test never overlap)
  c.dataset.labels = ("shape", "color", "texture")  # one linear-probe column per label
  c.dataset.primary_label = "shape"  # the class label of kNN, few-shot and corruption columns
  c.dataset.imagenet_classes = ()  # ImageNet-1k indices of the dataset's labels (ImageNet-C
  #                                  only); () = the labels are ImageNet-1k indices
  c.dataset.data = evaluate.default_config().dataset.data  # the data section read when
  #   dataset.name="data" (a tfds dataset or an image folder: configs/eval/tfds.py, folder.py);
  #   unused here

  # Linear probe (also the rotation probe and the classifier under corruption).
  c.probe.enabled = True
  c.probe.steps = 300  # full-batch Adam iterations
  c.probe.lr = 0.05  # Adam learning rate
  c.probe.l2_grid = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)  # L2 strengths tried (all in one vmapped fit)
  c.probe.val_fraction = 0.2  # share of the training split held out to choose the L2 strength
  c.probe.normalize = "standardize"  # standardize | l2 | none (statistics of the fitting set)

  # Rotation: 4-way probe of the rotation (0/90/180/270) applied to each image.
  c.rotation.enabled = True
  c.rotation.num_train = 500  # training images, each at all 4 rotations (2000 examples)
  c.rotation.num_test = 250  # test images, each at all 4 rotations (1000 examples)

  # Weighted kNN on cosine similarity, the training split as the bank.
  c.knn.enabled = True
  c.knn.k = 20
  c.knn.temperature = 0.07  # vote weight exp(cos / temperature)

  # Few-shot: per trial, K examples per class and one linear classifier (METHOD.md).
  c.fewshot.enabled = True
  c.fewshot.shots = (5, 10)  # K values (one column each)
  c.fewshot.trials = 10  # trials per K; reported: mean and 95% CI (Student's t)
  c.fewshot.steps = 250  # Adam iterations per classifier
  c.fewshot.lr = 0.03  # Adam learning rate
  c.fewshot.l2 = 0.0  # L2 strength on the weights
  c.fewshot.normalize = "l2"  # l2 | standardize | none
  c.fewshot.small_classes = "error"  # a class with fewer than K training examples: error (a
  #                                    ValueError naming them, before any feature is extracted)
  #                                    | skip (the K-shot task leaves it and its test images out)

  # Corruption robustness of the primary label's probe (trained on clean features).
  c.corruption.enabled = True
  c.corruption.source = "synthetic"  # synthetic (on device, any dataset) |
  #                                    imagenet2012_corrupted (tfds ImageNet-C, if prepared)
  c.corruption.names = corruptions.CORRUPTIONS  # families noise, blur, weather, digital
  c.corruption.severities = (1, 2, 3, 4, 5)
  c.corruption.num_images = 200  # test images corrupted per corruption and severity
  c.corruption.tfds_data_dir = ""  # ImageNet-C's tfds data_dir; "" = tfds' default. Never
  #                                  downloads: an unprepared dataset is a clear error

  # Augmentation sensitivity: distance moved when one augmentation's parameters change.
  c.sensitivity.enabled = True
  c.sensitivity.num_images = 256  # test images (source size; views rendered on device)
  c.sensitivity.augmentations = ()  # columns; () = every augmentation enabled in pretraining

  # evaluate.online_knn_accuracy (monitoring during pretraining): kNN sizes.
  c.online.num_train = 1000
  c.online.num_test = 500
  return c

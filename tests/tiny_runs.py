"""Shared settings of the tests' tiny training runs (imported by the test modules)."""

# The student and train keys of the tiny multi-domain runs (tests/test_domains.py, tests/test_universal.py).
TINY_STUDENT = {"family": "resnet_cifar", "width_choices": [0.5, 1.0], "options": {"base_channels": [8, 16, 16]}}
TINY_TRAIN = {
    "steps": 6,
    "num_sampled": 2,
    "batch_labeled": 8,
    "batch_unlabeled": 16,
    "warmup_steps": 1,
    "checkpoint_every": 3,
    "bn_calibration_images": 64,
    "channels_last": False,  # slow for tiny nets on CPU
}

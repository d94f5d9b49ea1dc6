"""Test-session settings: one intra-op thread (tests use tiny tensors, where thread
hand-off costs more than it saves, and a busy 2-core CI machine oversubscribes)."""

import torch

torch.set_num_threads(1)

"""The words of a verify document: an output's (and the run's) status, and the error
statistics ``--error-stat`` chooses from, and how ``--trust-pickle`` is explained.

Kept apart from :mod:`~plugins.commands.verify.metrics` (which needs numpy) because the
command's parser and its table reporter use them, and ``graphinspect --help`` builds
every parser and registers every reporter without importing numpy.
"""

SAME = "same"
DIFFER = "differs"
INCOMPLETE = "incomplete"
ERROR_STATS = ("max", "mean", "median")

WEIGHTS_WORDS = {
    "ok": "the diff re-computed its weights, so the difference is in the computation, not the weights",
    "mismatch": "the diff found its weights differ from the PyTorch ones",
    "unmatched": "the diff could not trace its weights",
}
"""What a differing layer's ``diff_status`` says about where the difference is."""


def weights_words(diff_status: str) -> str:
    """:data:`WEIGHTS_WORDS` for a layer's ``diff_status`` (any other status by name)."""
    return WEIGHTS_WORDS.get(diff_status, f"diff status {diff_status}")


TRUST_PICKLE_HELP = (
    "run a whole pickled module or checkpoint (torch.save(model)) by unpickling it with "
    "torch.load(weights_only=False), or a TorchScript/.pt2 file that the safety checks refuse: "
    "THIS EXECUTES CODE FROM THE FILE; use it only for files you trust (prefer --model)"
)
CONSENT = "pass --trust-pickle to run it anyway, which executes code from the file"

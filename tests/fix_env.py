"""The tests do not depend on the caller's Hugging Face settings.

huggingface_hub and transformers read their HF_* (and TRANSFORMERS_*) variables once, when they
are first imported: fix_models imports them as a plugin, before any fixture runs. This plugin
is listed first in conftest.py and removes those variables as it is imported, so that, for
example, an offline user's HF_HUB_OFFLINE=1 leaves the suite as it is everywhere else (tests
that want the hub offline say so themselves). Child processes inherit the cleaned environment.
"""

from __future__ import annotations

import os

CALLER_SETTINGS = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_")

for name in [name for name in os.environ if name.startswith(CALLER_SETTINGS)]:
    del os.environ[name]

"""``melkit card``: ``MODEL_CARD.md`` from a model card JSON, ``melkit bench`` reports and notes.

:func:`run_card` (what the command runs) takes :class:`CardOptions` and gives a :class:`CardResult`;
:func:`load_inputs` and :func:`render` are its two steps, :func:`front_matter`, :func:`to_yaml` and
:func:`hf_license_id` the front matter's parts. The modules, one job each:

- ``inputs``: the options, and reading and checking the card, the bench reports, the notes and the previous release;
- ``front_matter`` and ``yaml_emitter``: the Hugging Face front matter (licence id, model-index) and its YAML;
- ``sections_model``, ``sections_training``, ``sections_results``, ``sections_comparison``: the sections by topic;
- ``commands``: the Reproduce section, the commands reconstructed from the card and the reports;
- ``document``: the sections in order, and writing (or ``--check``-ing) the file.
"""

from melkit.release.card_document.document import CardResult, render, run_card
from melkit.release.card_document.front_matter import front_matter, hf_license_id
from melkit.release.card_document.inputs import CardInputs, CardOptions, load_inputs
from melkit.release.card_document.yaml_emitter import to_yaml

__all__ = ["CardOptions", "CardInputs", "CardResult", "load_inputs", "render", "run_card", "front_matter",
           "hf_license_id", "to_yaml"]

"""Images and their labels, below everything that trains or runs a model: records and the readers of the
HAM10000 and class-folder layouts, the lesion-grouped split, THE preprocessing contract (``contract``), the
tf.data pipeline and augmentation, the synthetic ABCD set (``melkit data synth``) and the download of public
sets (``melkit data fetch``).

    from melkit.data import read_dataset, write_synth_dataset
    write_synth_dataset("data/synth", n_lesions=240, seed=0)
    data = read_dataset("data/synth")   # -> DataSet of Records (image, label, lesion, source)
"""

from melkit.util.lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use (melkit.util.lazy)
    "CONTRACT": "contract",
    "CONTRACTS": "contract",
    "Contract": "contract",
    "FetchOptions": "fetch",
    "fetch_set": "fetch",
    "read_dataset": "readers",
    "read_sources": "readers",
    "LABELS": "records",
    "SPLITS": "records",
    "DataSet": "records",
    "Record": "records",
    "SynthOptions": "synth",
    "write_synth_dataset": "synth",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

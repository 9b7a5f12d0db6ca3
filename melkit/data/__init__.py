"""Images and their labels, below everything that trains or runs a model: records and the readers of the
HAM10000 and class-folder layouts, the lesion-grouped split, THE preprocessing contract (``contract``), the
tf.data pipeline and augmentation, the synthetic ABCD set (``melkit data synth``) and the download of public
sets (``melkit data fetch``).

    from melkit.data import read_dataset, write_synth_dataset
    write_synth_dataset("data/synth", n_lesions=240, seed=0)
    data = read_dataset("data/synth")   # -> DataSet of Records (image, label, lesion, source)
"""

from melkit.data.contract import CONTRACT, CONTRACTS, Contract
from melkit.data.fetch import FetchOptions, fetch_set
from melkit.data.readers import read_dataset, read_sources
from melkit.data.records import LABELS, SPLITS, DataSet, Record
from melkit.data.synth import SynthOptions, write_synth_dataset

__all__ = ["CONTRACT", "CONTRACTS", "Contract", "DataSet", "FetchOptions", "LABELS", "Record", "SPLITS",
           "SynthOptions", "fetch_set", "read_dataset", "read_sources", "write_synth_dataset"]

"""ANN -> QANN -> SNN conversion: spiking codings, spiking ops, activity traces, backends."""
from converters import codings
from converters.neurons import IFNeuron, if_neuron_reference, track_counts
from converters.snn import ConversionError, SNNResult, SpikingModel, StreamResult, convert
from converters.sequential import from_sequential
from converters.backends import BACKENDS, Exported, export, import_nir
from converters.hf import from_hf
from converters.io import load_qann, load_spiking, save_qann, save_spiking
from converters.trace import ActivityTrace, SiteActivity

__all__ = ["BACKENDS", "Exported", "export", "from_hf", "from_sequential", "import_nir", "ActivityTrace", "ConversionError", "IFNeuron", "SNNResult", "SiteActivity",
           "SpikingModel", "StreamResult", "codings", "convert", "if_neuron_reference", "load_qann", "load_spiking", "save_qann",
           "save_spiking", "track_counts"]

"""ANN -> QANN -> SNN conversion: signed IF neurons, spiking ops, activity traces, backends."""
from converters.neurons import IFNeuron, if_neuron_reference, track_counts
from converters.snn import ConversionError, SNNResult, SpikingModel, convert
from converters.io import load_qann, load_spiking, save_qann, save_spiking
from converters.trace import ActivityTrace, SiteActivity

__all__ = ["ActivityTrace", "ConversionError", "IFNeuron", "SNNResult", "SiteActivity",
           "SpikingModel", "convert", "if_neuron_reference", "load_qann", "load_spiking", "save_qann",
           "save_spiking", "track_counts"]

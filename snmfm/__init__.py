"""snmfm: compressed multimodal foundation models -> exact spiking models -> honest hardware energy."""
__version__ = "0.1.0"

"""lstmgen: turn a CSV or text file into a trained LSTM text generator, then sample and evaluate it."""

__version__ = "0.1.0"

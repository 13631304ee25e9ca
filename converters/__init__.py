"""The workstation side of edgecv, installed as ``edgecv.converters`` (the repo keeps it in ``converters/``):
export, post-training quantization, QAT, pruning, distillation and ``optimize``. It needs TensorFlow and the
other converters (``pip install 'edgecv[convert]'``); the device side never imports it.

Importing this package imports nothing else; each module imports its heavy libraries when called.
"""

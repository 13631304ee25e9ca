"""Train the Keras MNIST CNN the PTQ benchmark quantizes, on MNIST test images 0..7999 (the project's split).

    .venv/bin/python benchmarks/train_mnist_cnn.py --out /tmp/mnist_cnn.keras [--epochs 4] [--seed 0]

A plain conv-BN-ReLU CNN (about 235k parameters, most in the dense layer) taking NHWC 28x28x1 inputs in
[0, 1], i.e. ``Preprocess(mean=(0,), std=(255,))``, with a softmax output. Under a minute on two CPU cores;
it reaches about 98% top-1 on images 8000..9999. The MNIST training set is not available here, so only the
shared test set is used: images 0..7999 to train, 8000..9999 to evaluate.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np

from _common import SHARED_DATA

from edgecv.converters.tf_env import import_tensorflow

TRAIN = slice(0, 8000)
EVAL = slice(8000, 10000)


def load_mnist(folder: Path = SHARED_DATA / "mnist") -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (uint8 [N, 28, 28]) and labels (int64 [N]) from the IDX files."""
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def build_cnn(seed: int = 0, *, width: int = 1):
    """Conv-BN-ReLU x4 (16 | pool | 32, 32 | pool | 64) and a 1x1 to 32, then dense 128 and a softmax;
    ``width`` multiplies every conv and the hidden dense layer."""
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = inputs
    for filters in (16, None, 32, 32, None, 64):
        if filters is None:
            x = keras.layers.MaxPooling2D()(x)
            continue
        x = keras.layers.Conv2D(filters * width, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)  # settles within a short training
        x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32 * width, 1, use_bias=False)(x)  # 7x7x32 before the dense layer keeps it ~200k
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128 * width, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn" if width == 1 else f"mnist_cnn_w{width}")


def train_mnist_cnn(out: Path | None = None, *, epochs: int = 4, seed: int = 0, cosine: bool = False, verbose: int = 0):
    """Train on images 0..7999 with a fixed seed, Adam 2e-3 (decayed along a cosine with ``cosine``),
    batch 64; save to ``out`` (.keras) when given. Returns ``(model, eval_top1)``, the top-1 on images 8000..9999."""
    import keras

    images, labels = load_mnist()
    model = build_cnn(seed)
    x = images[TRAIN, :, :, None].astype(np.float32) / 255.0
    lr = keras.optimizers.schedules.CosineDecay(2e-3, -(-len(x) // 64) * epochs) if cosine else 2e-3
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, labels[TRAIN], epochs=epochs, batch_size=64, shuffle=True, verbose=verbose)
    probs = model.predict(images[EVAL, :, :, None].astype(np.float32) / 255.0, batch_size=256, verbose=0)
    top1 = float(np.mean(np.argmax(probs, axis=1) == labels[EVAL]))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        model.save(str(out))
    return model, top1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("mnist_cnn.keras"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    start = time.perf_counter()
    model, top1 = train_mnist_cnn(args.out, epochs=args.epochs, seed=args.seed, verbose=2)
    print(f"{model.count_params():,} parameters; top-1 on images 8000..9999: {100 * top1:.2f}%; "
          f"{time.perf_counter() - start:.0f} s; saved {args.out}")


if __name__ == "__main__":
    main()

"""The built-in default model: a small CNN that classifies synthetic shapes, trained here in seconds.

It is what ``edgecv demo`` exports and benchmarks, so the main job runs with nothing downloaded.

Example:
    >>> model = build_default_classifier(epochs=1)      # doctest: +SKIP
    >>> model.output_shape                               # doctest: +SKIP
    (None, 4)
"""

from __future__ import annotations

import numpy as np

from edgecv.converters.tf_env import import_tensorflow
from edgecv.manifest import Preprocess
from edgecv.synthetic import SHAPE_CLASSES, shape_images

IMAGE_SIZE = 32
PREPROCESS = Preprocess(layout="NHWC", color="RGB", mean=(0.0,), std=(255.0,))
LABELS = list(SHAPE_CLASSES)


def build_default_classifier(*, epochs: int = 6, train_images: int = 3000, seed: int = 0):
    """Build and briefly train the default classifier; returns a Keras model with a softmax output.

    About 20 s on two cores, reaching about 92% top-1 on held-out synthetic shapes.
    """
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # momentum 0.9: the default 0.99 leaves BN statistics unsettled after a short training.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU(6.0)(x)
        x = keras.layers.MaxPooling2D()(x)
    # Max pooling keeps "is there a corner/arm anywhere"; average pooling learned far slower here.
    x = keras.layers.GlobalMaxPooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="edgecv_shapes")

    images, labels = shape_images(train_images, size=IMAGE_SIZE, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images.astype(np.float32) / 255.0, labels, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    return model


def evaluate_default(model, *, count: int = 400, seed: int = 1) -> float:
    """Top-1 accuracy of a Keras model on fresh synthetic shapes (a seed not used in training)."""
    images, labels = shape_images(count, size=IMAGE_SIZE, seed=seed)
    probs = model.predict(images.astype(np.float32) / 255.0, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))

"""The variants compared: the loccon network or its layers, and their steps.

Each variant ("keras_brainprop", "tf_keras_1" to "tf_keras_3", "conv2d")
builds the paper's MNIST "loccon" network, or only its two locally connected
layers, in its own framework (Keras 3, or Keras 2's tf_keras), and a
`tf.function` step that trains it or takes its gradients, on the same
random batches.
"""


def _local_layer_maker(variant):
    """`variant`'s framework, its input layer and a locally connected maker.

    The maker takes the strides and returns one of the network's locally
    connected layers (32 filters, 3x3, 'valid', no bias).
    """
    if variant.startswith("tf_keras"):
        import tf_keras as framework

        implementation = int(variant[-1])
        input_layer = framework.layers.InputLayer(input_shape=(28, 28, 1))

        def local_layer(strides):
            return framework.layers.LocallyConnected2D(
                32,
                3,
                strides=strides,
                use_bias=False,
                kernel_initializer=_initializer(framework),
                implementation=implementation,
            )

    else:
        import keras as framework

        from keras_brainprop.layers import LocallyConnected2D

        input_layer = framework.Input((28, 28, 1))

        def local_layer(strides):
            layer_class = (
                LocallyConnected2D
                if variant == "keras_brainprop"
                else framework.layers.Conv2D
            )
            return layer_class(
                32,
                3,
                strides=strides,
                use_bias=False,
                kernel_initializer=_initializer(framework),
            )

    return framework, input_layer, local_layer


def _initializer(framework):
    return framework.initializers.RandomNormal(stddev=0.005, seed=1)


def build_model(variant):
    """The loccon network with `variant`'s locally connected layers."""
    framework, input_layer, local_layer = _local_layer_maker(variant)
    layers = framework.layers
    initializer = _initializer(framework)
    model = framework.Sequential(
        [
            input_layer,
            local_layer(1),
            layers.ReLU(),
            layers.BatchNormalization(),
            local_layer(2),
            layers.ReLU(),
            layers.BatchNormalization(),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(500, use_bias=False, kernel_initializer=initializer),
            layers.ReLU(),
            layers.Dropout(0.3),
            layers.Dense(10, use_bias=False, kernel_initializer=initializer),
        ]
    )
    return model


def build_local_layers(variant):
    """Only the network's two locally connected layers and the ReLU between."""
    framework, input_layer, local_layer = _local_layer_maker(variant)
    return framework.Sequential(
        [input_layer, local_layer(1), framework.layers.ReLU(), local_layer(2)]
    )


def training_batches(steps, batch_size):
    """`steps` batches of random images and labels, as tensors."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (steps, batch_size, 28, 28, 1)
    images = tf.constant(rng.random(shape, dtype=np.float32))
    labels = tf.constant(rng.integers(0, 10, size=shape[:2]))
    return images, labels


def training_step(variant, model, jit_compile):
    """A compiled SGD(0.1) softmax cross-entropy step for `model`."""
    import tensorflow as tf

    if variant.startswith("tf_keras"):
        import tf_keras as framework
    else:
        import keras as framework
    optimizer = framework.optimizers.SGD(0.1)
    loss_function = framework.losses.SparseCategoricalCrossentropy(
        from_logits=True
    )
    variables = model.trainable_variables
    jit_compile = jit_compile and not variant.startswith("tf_keras")

    @tf.function(jit_compile=jit_compile)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_function(labels, model(images, training=True))
        gradients = tape.gradient(loss, variables)
        if variant.startswith("tf_keras"):
            optimizer.apply_gradients(zip(gradients, variables))
        else:
            optimizer.apply(gradients, variables)
        return loss

    return step


def gradient_step(variant, model, jit_compile):
    """A compiled forward and backward pass of `model`, without update.

    Gradients of the summed outputs w.r.t. the inputs and the kernels.
    """
    import tensorflow as tf

    variables = model.trainable_variables
    jit_compile = jit_compile and not variant.startswith("tf_keras")

    @tf.function(jit_compile=jit_compile)
    def step(images, labels):
        del labels  # Unused; the signature is the training step's.
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = model(images, training=True)
        gradients = tape.gradient(outputs, [images, *variables])
        # Returned so that tf.function does not prune the backward pass.
        return tf.add_n([tf.reduce_sum(gradient) for gradient in gradients])

    return step

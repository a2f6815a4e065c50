r"""Fashion-MNIST: the paper's MNIST networks on clothing images.

Not in the paper: MNIST's harder drop-in replacement (28x28 greyscale, 10
classes), which is available offline here. Trains the dense, conv or loccon
network from reward alone (BrainProp) or from the labels by error
backpropagation, with the paper's MNIST protocol. The conv net reaches
about 0.92 with both (docs/benchmarks.md).

    python examples/fashion_mnist.py --architecture=conv --algorithm=brainprop
    python examples/fashion_mnist.py --architecture=conv --algorithm=backprop

The four IDX files are read from `--data_dir`, else from
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).

Every Keras backend runs it the same way (`KERAS_BACKEND=jax` or `torch`
before the command); the output names the backend.
"""

from keras_brainprop import cli

# The paper's MNIST networks.
main = cli.example_main(
    "fashion_mnist",
    ("dense", "conv", "loccon"),
    "conv",
    data_dir_help="The folder of the IDX files.",
)

if __name__ == "__main__":
    cli.run_script(main)  # A bad flag or missing data: one message.

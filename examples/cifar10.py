r"""CIFAR-10: the BrainProp paper's deep, conv and loccon networks.

Trains one of the paper's CIFAR-10 networks from reward alone (BrainProp)
or from the labels by error backpropagation (the paper's baseline), with
the paper's protocol. The paper reports (BrainProp, deep, 10 seeds):
88.88% (0.27) in 105 (4) epochs, 8 s per epoch on a GTX 1080 Ti.

    python examples/cifar10.py --architecture=deep --algorithm=brainprop
    python examples/cifar10.py --architecture=deep --algorithm=backprop

CIFAR-10 is read from `--data_dir` (cifar-10-batches-py/ or
cifar-10-python.tar.gz), never downloaded.

Every Keras backend runs it the same way (`KERAS_BACKEND=jax` or `torch`
before the command); the output names the backend.
"""

from keras_brainprop import cli

# The paper's CIFAR networks.
main = cli.example_main(
    "cifar10",
    ("deep", "conv", "loccon"),
    "deep",
    data_dir_help="The folder holding CIFAR-10.",
)

if __name__ == "__main__":
    cli.run_script(main)  # A bad flag or missing data: one message.

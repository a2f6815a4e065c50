r"""CIFAR-100: the BrainProp paper's deep, conv and loccon networks.

Trains one of the paper's CIFAR-100 networks from reward alone
(BrainProp), where a wrong guess among 100 classes earns nothing, or from
the labels by error backpropagation (the paper's baseline), with the
paper's protocol. The paper reports (BrainProp, deep, 10 seeds): 59.58%
(0.46) in 218 (22) epochs.

    python examples/cifar100.py --architecture=deep --algorithm=brainprop
    python examples/cifar100.py --architecture=deep --algorithm=backprop

CIFAR-100 is read from `--data_dir` (cifar-100-python/ or
cifar-100-python.tar.gz), never downloaded.

Every Keras backend runs it the same way (`KERAS_BACKEND=jax` or `torch`
before the command); the output names the backend.
"""

from keras_brainprop import cli

# The paper's CIFAR networks.
main = cli.example_main(
    "cifar100",
    ("deep", "conv", "loccon"),
    "deep",
    data_dir_help="The folder holding CIFAR-100.",
)

if __name__ == "__main__":
    cli.run_script(main)  # A bad flag or missing data: one message.

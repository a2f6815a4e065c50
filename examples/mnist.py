r"""MNIST: the BrainProp paper's dense, conv and loccon networks.

Trains one of the paper's MNIST networks from reward alone (BrainProp) or
from the labels by error backpropagation (the paper's baseline), with the
paper's protocol. The paper reports (BrainProp, 10 seeds): dense 98.68%
(0.07); conv 99.31% (0.04) in 63 (18) epochs.

    python examples/mnist.py --architecture=conv --algorithm=brainprop
    python examples/mnist.py --architecture=conv --algorithm=backprop

MNIST is read from `--data_dir` (the four IDX files or Keras' mnist.npz),
never downloaded.

Every Keras backend runs it the same way (`KERAS_BACKEND=jax` or `torch`
before the command); the output names the backend.
"""

from keras_brainprop import cli

# The paper's MNIST networks.
main = cli.example_main(
    "mnist",
    ("dense", "conv", "loccon"),
    "conv",
    data_dir_help="The folder holding MNIST.",
)

if __name__ == "__main__":
    cli.run_script(main)  # A bad flag or missing data: one message.

r"""Tiny ImageNet: the BrainProp paper's deep network on 200 classes.

Trains the paper's `deep` network on Tiny ImageNet (64x64 colour images,
200 classes) from reward alone (BrainProp) or from the labels by error
backpropagation (the paper's baseline), with the paper's protocol. Its
test labels are not public: the official validation set is the test set.
The paper reports (BrainProp, 10 seeds): 47.50% (1.30) in 328 (75) epochs.

    python examples/tiny_imagenet.py --algorithm=brainprop
    python examples/tiny_imagenet.py --algorithm=backprop

Read from `--data_dir` (tiny-imagenet-200/ or tiny-imagenet-200.zip), never
downloaded.

Every Keras backend runs it the same way (`KERAS_BACKEND=jax` or `torch`
before the command); the output names the backend.
"""

from keras_brainprop import cli

# The paper's Tiny ImageNet network.
main = cli.example_main(
    "tiny_imagenet",
    ("deep",),
    "deep",
    data_dir_help="The folder holding tiny-imagenet-200/.",
)

if __name__ == "__main__":
    cli.run_script(main)  # A bad flag or missing data: one message.

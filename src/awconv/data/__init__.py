"""Data sets: classification (ImageFolder, CIFAR, MNIST 5k, digits) and COCO-format detection."""

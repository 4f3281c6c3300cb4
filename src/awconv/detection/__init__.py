"""Faster R-CNN with FPN on awconv ResNet backbones, assembled from torchvision parts."""

"""ResNet families with SE, CBAM and AW-convolution, registered with timm."""

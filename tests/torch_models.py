"""Reference networks in plain PyTorch (torchvision's layouts; torchvision itself does not
import against the CPU build used here). Used to prove the ONNX import on real exports."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, counts: list[int], classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (count, width) in enumerate(zip(counts, (64, 128, 256, 512)), 1):
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, 2 if j == 0 and i > 1 else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18() -> nn.Module:
    return ResNet(BasicBlock, [2, 2, 2, 2])


def resnet50() -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3])


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, act=nn.ReLU6)]
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        settings = [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]
        features: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


class SqueezeNet(nn.Module):  # version 1.1
    def __init__(self, classes: int = 1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64), Fire(128, 16, 64), pool(),
            Fire(128, 32, 128), Fire(256, 32, 128), pool(),
            Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, out], 1)


class FeatureListLayer(DenseLayer):
    """torchvision's _DenseLayer: it takes the list of every feature map so far."""

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class FeatureListBlock(nn.Sequential):
    """torchvision's _DenseBlock: each layer reads the concatenation of all before it, and
    the block gives the concatenation of all (the export's concats grow to 24 inputs)."""

    def forward(self, x):
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet(nn.Module):
    def __init__(
        self, counts=(6, 12, 24, 16), growth: int = 32, classes: int = 1000, feature_lists: bool = False
    ):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, 64, 7, 2, 3, bias=False)),
            ("norm0", nn.BatchNorm2d(64)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, 2, 1)),
        ]
        c = 64
        for i, count in enumerate(counts, 1):
            block = FeatureListBlock() if feature_lists else nn.Sequential()
            for j in range(count):
                layer = (FeatureListLayer if feature_lists else DenseLayer)(c + j * growth, growth)
                block.add_module(f"denselayer{j + 1}", layer)
            layers.append((f"denseblock{i}", block))
            c += count * growth
            if i != len(counts):
                transition = nn.Sequential()
                transition.add_module("norm", nn.BatchNorm2d(c))
                transition.add_module("relu", nn.ReLU(inplace=True))
                transition.add_module("conv", nn.Conv2d(c, c // 2, 1, bias=False))
                transition.add_module("pool", nn.AvgPool2d(2, 2))
                layers.append((f"transition{i}", transition))
                c //= 2
        layers.append(("norm5", nn.BatchNorm2d(c)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        x = nn.functional.relu(self.features(x))
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class UNet(nn.Module):
    def __init__(self, cin: int = 1, classes: int = 2, base: int = 16):
        super().__init__()

        def double(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
            )  # fmt: skip

        widths = [base, base * 2, base * 4, base * 8]
        self.inc = double(cin, widths[0])
        self.downs = nn.ModuleList(double(widths[i], widths[i + 1]) for i in range(3))
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in reversed(range(3))
        )
        self.decs = nn.ModuleList(double(widths[i] * 2, widths[i]) for i in reversed(range(3)))
        self.up_last = nn.Upsample(scale_factor=1)
        self.outc = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(self.pool(skips[-1])))
        x = skips.pop()
        for up, dec in zip(self.ups, self.decs):
            x = dec(torch.cat([skips.pop(), up(x)], 1))
        return self.outc(x)


def export(model: nn.Module, shape: tuple[int, ...], path, fold: bool = True, opset: int = 17) -> None:
    """torch.onnx.export as users call it: eval mode, symbolic batch."""
    import warnings

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.randn(1, *shape),
            str(path),
            dynamo=False,
            do_constant_folding=fold,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        )


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics, so a wrongly imported batch norm shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        gate = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(gate))))


class OpMix(nn.Module):
    """Every op the importer claims, in one small network: SiLU, hardswish, hardsigmoid,
    leaky ReLU, PReLU (per channel and shared), GELU, mish (Mish, or Softplus-Tanh-Mul below opset 18), softplus, a squeeze-and-excitation gate, nearest and bilinear upsampling, a
    ceil-mode pool, padded average pools that leave the padding out of the count and that
    count it (PyTorch's default), a mean over H and W, and a softmax."""

    def __init__(self, classes: int = 7):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.act = nn.SiLU()
        self.se = SqueezeExcite(8, 4)
        self.expand = nn.Conv2d(8, 16, 1)
        self.hs = nn.Hardswish()
        self.prelu = nn.PReLU(16)
        self.prelu_shared = nn.PReLU()
        self.gate = nn.Conv2d(16, 16, 1)
        self.hsig = nn.Hardsigmoid()
        self.up_nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_bilinear = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.avg_counted = nn.AvgPool2d(3, 1, 1)
        self.reduce = nn.Conv2d(16, 12, 3, padding=1)
        self.leaky = nn.LeakyReLU(0.2)
        self.mish = nn.Mish()
        self.fc = nn.Linear(12, 16)
        self.gelu = nn.GELU()
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = self.se(self.act(self.stem(x)))
        x = self.prelu(self.hs(self.expand(x)))
        x = x * self.hsig(self.gate(x))
        x = self.pool(self.up_bilinear(self.up_nearest(x)))
        x = self.mish(self.leaky(self.reduce(self.avg_counted(self.avg(x)))))
        x = nn.functional.softplus(x.mean((2, 3)))
        return torch.softmax(self.head(self.prelu_shared(self.gelu(self.fc(x)))), dim=1)


# ------------------------------------------------ channel split, slice and shuffle (issue 20)


def channel_shuffle(x, groups: int):
    """torchvision's ShuffleNetV2 channel_shuffle, as written there."""
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleUnit(nn.Module):
    """torchvision's InvertedResidual of ShuffleNetV2: chunk, branch, concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                conv_bn(cin, cin, 3, stride, groups=cin, act=None), conv_bn(cin, half, 1)
            )
        self.branch2 = nn.Sequential(
            conv_bn(cin if stride > 1 else half, half, 1),
            conv_bn(half, half, 3, stride, groups=half, act=None),
            conv_bn(half, half, 1),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """torchvision's layout; shufflenet_v2_x1_0 is widths (24, 116, 232, 464), repeats
    (4, 8, 4), last 1024, 1000 classes."""

    def __init__(self, widths=(24, 48, 96), repeats=(3, 3), last: int = 0, classes: int = 10):
        super().__init__()
        self.conv1 = conv_bn(3, widths[0], 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], widths[0]
        for cout, count in zip(widths[1:], repeats):
            stages += [ShuffleUnit(cin, cout, 2)] + [ShuffleUnit(cout, cout, 1) for _ in range(count - 1)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.conv5 = conv_bn(cin, last, 1) if last else nn.Identity()
        self.fc = nn.Linear(last or cin, classes)

    def forward(self, x):
        x = self.conv5(self.stages(self.maxpool(self.conv1(x))))
        return self.fc(x.mean([2, 3]))


class GhostModule(nn.Module):
    """GhostNet's module: a primary conv, cheap depthwise features of it, the concatenation
    cut to the output width (`[:, :oup]`)."""

    def __init__(self, cin: int, oup: int):
        super().__init__()
        self.oup = oup
        init = -(-oup // 2)
        self.primary = conv_bn(cin, init, 1)
        self.cheap = conv_bn(init, init, 3, groups=init)

    def forward(self, x):
        x1 = self.primary(x)
        return torch.cat([x1, self.cheap(x1)], dim=1)[:, : self.oup, :, :]


class Res2Block(nn.Module):
    """Res2Net's bottleneck (stride 2, 'stage' type): split the width into scales, a conv on
    each, the last part average-pooled with PyTorch's count_include_pad=True."""

    def __init__(self, cin: int, width: int = 8, scale: int = 4):
        super().__init__()
        self.width, self.scale = width, scale
        self.conv1 = conv_bn(cin, width * scale, 1)
        self.convs = nn.ModuleList(conv_bn(width, width, 3, 2) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, 2, 1)
        self.conv3 = conv_bn(width * scale, cin, 1, act=None)
        self.down = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                                  conv_bn(cin, cin, 1, act=None))  # fmt: skip

    def forward(self, x):
        spx = torch.split(self.conv1(x), self.width, 1)
        out = [conv(sp) for conv, sp in zip(self.convs, spx)] + [self.pool(spx[-1])]
        return torch.relu(self.conv3(torch.cat(out, 1)) + self.down(x))


class ChannelOps(nn.Module):
    """Ghost modules, a Res2Net block, a CSP split with sizes, ReXNet's residual added to the
    first C channels only, DPN's slices of one tensor and a GELU: the channel ops of issue 20."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        self.ghost = GhostModule(16, 23)
        self.expand = conv_bn(23, 32, 1)
        self.res2 = Res2Block(32)
        self.csp_a = conv_bn(12, 12, 3)
        self.rex = conv_bn(32, 40, 1, act=lambda inplace: nn.GELU())
        self.dpn = conv_bn(40, 48, 1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.expand(self.ghost(self.stem(x)))
        x = self.res2(x)
        a, b = torch.split(x, [12, 20], dim=1)  # CSP: one part through a conv, the other kept
        x = torch.cat([self.csp_a(a), b], dim=1)
        out = self.rex(x)
        x = torch.cat([out[:, :32] + x, out[:, 32:]], dim=1)  # ReXNet
        y = self.dpn(x)
        third = y.size(1) // 3  # Shape, Gather and Div in the export: folded on the static shape
        x = torch.cat([y[:, :third] + y[:, third : 2 * third], y[:, 2 * third :]], dim=1)  # DPN
        return self.fc(x.mean([2, 3]))


class LayerNorm2d(nn.LayerNorm):
    """timm's LayerNorm2d: LayerNorm over the channels of an NCHW map, through a permute."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelsFirstLayerNorm(nn.Module):
    """The ConvNeXt paper's own channels-first LayerNorm, written out in plain ops."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = (
            nn.Parameter(torch.rand(c) + 0.5),
            nn.Parameter(torch.randn(c)),
            eps,
        )

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """torchvision's CNBlock: depthwise 7x7, then LayerNorm, Linear, GELU, Linear on the
    channels-last view, layer scale, and the residual (stochastic depth is identity here)."""

    def __init__(self, c: int):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.layer_scale = nn.Parameter(torch.rand(c, 1, 1) * 0.1 + 1e-6)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class ConvNeXtAtto(nn.Module):
    """ConvNeXt's layout, small: a 4x4 patch stem and LayerNorm2d, blocks, channels-first
    LayerNorm and a 2x2 conv between stages, a head of global pool, LayerNorm2d, linear."""

    def __init__(self, widths=(16, 32), depths=(2, 1), classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, 4), LayerNorm2d(widths[0], eps=1e-6))
        stages = []
        for i, (c, depth) in enumerate(zip(widths, depths)):
            if i:
                stages += [ChannelsFirstLayerNorm(widths[i - 1]), nn.Conv2d(widths[i - 1], c, 2, 2)]
            stages += [ConvNeXtBlock(c) for _ in range(depth)]
        self.stages = nn.Sequential(*stages)
        self.norm = LayerNorm2d(widths[-1], eps=1e-6)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        x = self.norm(nn.functional.adaptive_avg_pool2d(x, 1))
        return self.fc(torch.flatten(x, 1))


class Pads(nn.Module):
    """Explicit padding as PyTorch writes it: ZeroPad2d before a conv (which the import
    makes the conv's own padding), a conv with padding_mode='reflect', ReplicationPad2d,
    uneven ZeroPad2d before a max pool."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.zero = nn.ZeroPad2d((1, 2, 0, 1))
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
        self.edge = nn.ReplicationPad2d(2)
        self.conv3 = nn.Conv2d(8, 4, 5)
        self.before_pool = nn.ZeroPad2d((0, 1, 0, 1))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 8 * 9, classes)

    def forward(self, x):
        x = torch.relu(self.conv1(self.zero(x)))
        x = self.conv3(self.edge(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(self.before_pool(x)), 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation with MobileNetV3's hard sigmoid gate."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(scale))))


class MobileNetV3Block(nn.Module):
    def __init__(self, cin: int, k: int, expanded: int, cout: int, se: bool, act: type, stride: int):
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn(cin, expanded, 1, act=act))
        layers.append(conv_bn(expanded, expanded, k, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(conv_bn(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)


MOBILENET_V3_LARGE = [  # torchvision's: in, kernel, expanded, out, SE, activation, stride
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1),
]  # fmt: skip


class MobileNetV3Large(nn.Module):
    """torchvision's mobilenet_v3_large: 5,483,032 parameters for 1000 classes."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        features: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
        for cin, k, expanded, cout, se, act, stride in MOBILENET_V3_LARGE:
            activation = nn.ReLU if act == "RE" else nn.Hardswish
            features.append(MobileNetV3Block(cin, k, expanded, cout, se, activation, stride))
        features.append(conv_bn(160, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Linear(960, 1280), nn.Hardswish(inplace=True), nn.Dropout(0.2), nn.Linear(1280, classes)
        )

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class HandWrittenHardGates(nn.Module):
    """Hard sigmoid and hard swish written as arithmetic, as MobileNetV3 code did before
    PyTorch had them: relu6(x + 3) / 6, x · relu6(x + 3) / 6, and · (1/6) for / 6; on a
    map, in a squeeze-excite gate, and on the channels-last view."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.linear, self.head = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        x = self.conv1(x)
        x = x * nn.functional.relu6(x + 3) / 6  # hard swish
        x = self.conv2(x)
        gate = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        x = x * (nn.functional.relu6(gate + 3) * (1 / 6))  # hard sigmoid gate
        y = self.linear(x.permute(0, 2, 3, 1))
        x = (y * nn.functional.relu6(y + 3) / 6).permute(0, 3, 1, 2)  # on the channels-last view
        return self.head(x.mean((2, 3)))


# ------------------------------------------------------------------ 1-D and 3-D networks


class M5(nn.Module):
    """Dai et al. 2017: raw audio, 80-sample kernel with stride 4, then 3-sample kernels."""

    def __init__(self, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout, k, stride, pad in (
            (1, 128, 80, 4, 38),
            (128, 128, 3, 1, 1),
            (128, 256, 3, 1, 1),
            (256, 512, 3, 1, 1),
        ):
            layers += [nn.Conv1d(cin, cout, k, stride, pad), nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.features(x).mean(dim=2)
        return torch.softmax(self.fc(x), dim=1)


class CausalBlock(nn.Module):
    """A TCN level (Bai et al. 2018): two causal dilated convs, the input added back."""

    def __init__(self, cin: int, cout: int, dilation: int):
        super().__init__()
        self.pad = 2 * dilation  # (kernel - 1) * dilation, all before the sequence
        self.conv1 = nn.Conv1d(cin, cout, 3, dilation=dilation)
        self.conv2 = nn.Conv1d(cout, cout, 3, dilation=dilation)
        self.down = nn.Conv1d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = torch.relu(self.conv1(nn.functional.pad(x, (self.pad, 0))))
        y = torch.relu(self.conv2(nn.functional.pad(y, (self.pad, 0))))
        return torch.relu(y + (self.down(x) if self.down is not None else x))


class TCN(nn.Module):
    def __init__(self, channels: int = 32, levels: int = 8, classes: int = 10):
        super().__init__()
        self.levels = nn.Sequential(
            *(CausalBlock(1 if i == 0 else channels, channels, 2**i) for i in range(levels))
        )
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.levels(x).mean(dim=2))


class Conv2Plus1D(nn.Sequential):
    """torchvision's (2+1)-D convolution: 1x3x3 over space, then 3x1x1 over time."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )


def conv3x3x3(cin: int, cout: int, mid: int, stride: int = 1) -> nn.Module:
    return nn.Conv3d(cin, cout, 3, stride, 1, bias=False)


class VideoBlock(nn.Module):
    """torchvision.models.video.resnet.BasicBlock."""

    def __init__(self, cin: int, planes: int, builder, stride: int = 1):
        super().__init__()
        mid = (cin * planes * 27) // (cin * 9 + 3 * planes)
        self.conv1 = nn.Sequential(
            builder(cin, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(builder(planes, planes, mid), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, planes, 1, stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv2(self.conv1(x)) + shortcut)


class VideoResNet(nn.Module):
    """torchvision's r3d_18 (3x3x3 convs) and r2plus1d_18 ((2+1)-D convs), 400 classes."""

    def __init__(self, two_plus_one: bool):
        super().__init__()
        if two_plus_one:
            self.stem = nn.Sequential(
                nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(45), nn.ReLU(inplace=True),
                nn.Conv3d(45, 64, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(64), nn.ReLU(inplace=True),
            )  # fmt: skip
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                nn.BatchNorm3d(64),
                nn.ReLU(inplace=True),
            )
        builder = Conv2Plus1D if two_plus_one else conv3x3x3
        blocks, cin = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [VideoBlock(cin, planes, builder, stride), VideoBlock(planes, planes, builder)]
            cin = planes
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, 400)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool3d(self.layers(self.stem(x)), 1), 1))


class UNet3D(nn.Module):
    """specs/zoo/unet3d.cnn: two levels down, two up, 3x3x3 convs."""

    def __init__(self):
        super().__init__()

        def double(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(a, b, 3, padding=1, bias=False), nn.BatchNorm3d(b), nn.ReLU(inplace=True),
                nn.Conv3d(b, b, 3, padding=1, bias=False), nn.BatchNorm3d(b), nn.ReLU(inplace=True),
            )  # fmt: skip

        self.enc1, self.enc2, self.bottom = double(1, 16), double(16, 32), double(32, 64)
        self.up2, self.dec2 = nn.ConvTranspose3d(64, 32, 2, 2), double(64, 32)
        self.up1, self.dec1 = nn.ConvTranspose3d(32, 16, 2, 2), double(32, 16)
        self.mask = nn.Conv3d(16, 3, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool3d(e1, 2))
        bottom = self.bottom(nn.functional.max_pool3d(e2, 2))
        d2 = self.dec2(torch.cat([e2, self.up2(bottom)], 1))
        return self.mask(self.dec1(torch.cat([e1, self.up1(d2)], 1)))

"""Table 3 shapes and parameter counts, the six architectures, and model names."""

from __future__ import annotations

import pytest
import torch

from mtlmusic import ConfigError
from mtlmusic.architectures import (ARCHITECTURES, SOURCES, build_network, count_parameters, model_name,
                                    parse_model_name)
from mtlmusic.nets import STAGE_NAMES, ConvBlock, MaxPool2x2, feature_stages, use_elementwise_pooling

TABLE3_SHAPES = {
    "block1": (16, 54, 64), "block2": (32, 27, 32), "block3": (64, 13, 16), "block4": (64, 6, 8),
    "block5": (128, 3, 4), "block6a": (256, 3, 4), "block6b": (256, 3, 4), "gap": (256,), "fc": (256,),
}


def test_every_intermediate_shape_of_table3():
    x = torch.zeros(3, 2, 216, 128)
    for name, stage in zip(STAGE_NAMES, feature_stages()):
        x = stage.eval()(x)
        assert tuple(x.shape[1:]) == TABLE3_SHAPES[name], name


def test_feature_network_has_563632_parameters():
    assert count_parameters(torch.nn.Sequential(*feature_stages())) == 563_632


def test_glorot_uniform_init():
    conv = feature_stages()[1].conv
    bound = (6 / (16 * 9 + 32 * 9)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.all(conv.bias == 0)


def test_size_ratios_of_paper_5_2_3():
    ssr = count_parameters(build_network("SS-R", ["tag"]))
    srfc = count_parameters(build_network("MS-SR@FC", SOURCES))
    cr6 = count_parameters(build_network("MS-CR@6", SOURCES))
    assert srfc / ssr == pytest.approx(1.2, abs=0.1)
    assert cr6 / ssr == pytest.approx(6.3, abs=0.2)


@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "SS-R"])
def test_every_architecture_runs_every_task(architecture):
    net = build_network(architecture, ["self", "bpm", "tag"], head_sizes={"tag": 7}).eval()
    x = torch.randn(4, 2, 216, 128)
    blocks = 1 if architecture == "MS-SR@FC" else 3
    assert net.features(x).shape == (4, 256 * blocks)
    assert net(x, "bpm").shape == (4, 50)
    assert net(x, "tag").shape == (4, 7)
    assert net(x, "self", x.flip(0)).shape == (4, 2)


@pytest.mark.parametrize("architecture,shared", [("MS-CR@2", 1), ("MS-CR@4", 3), ("MS-CR@6", 5),
                                                 ("MS-SR@FC", 9), ("MSS-CR", 0)])
def test_sharing_points(architecture, shared):
    net = build_network(architecture, ["bpm", "year"])
    assert len(net.shared) == shared
    assert all(len(branch) == 9 - shared for branch in net.branches.values())


def test_branches_are_independent():
    net = build_network("MS-CR@4", ["bpm", "year"]).eval()
    x = torch.randn(2, 2, 216, 128)
    before = net.task_features(x, "bpm")
    with torch.no_grad():
        net.branches["year"][0].conv.weight.add_(1.0)
    assert torch.equal(before, net.task_features(x, "bpm"))


def test_representation_is_batch_independent():
    net = build_network("MS-CR@6", ["bpm", "tag"]).eval()
    x = torch.randn(5, 2, 216, 128)
    with torch.inference_mode():
        assert torch.allclose(net.features(x)[2:3], net.features(x[2:3]), atol=1e-5)


def test_names_round_trip():
    assert model_name("MS-CR@2", ["tag", "bpm", "self"]) == "mscr2-self-bpm-tag"
    assert parse_model_name("mssrfc-self-bpm-year-tag-taste-cdr_tag-lyrics-artist") == ("MS-SR@FC", SOURCES)
    assert parse_model_name("ssr-lyrics") == ("SS-R", ("lyrics",))


@pytest.mark.parametrize("bad", ["ssr-self-bpm", "xyz-bpm", "mscr2", "mscr2-bpm-self", "mscr2-bpm-bpm"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ConfigError):
        parse_model_name(bad)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="architecture"):
        build_network("MS-CR@3", ["bpm"])
    with pytest.raises(ConfigError, match="exactly one"):
        build_network("SS-R", ["bpm", "tag"])
    with pytest.raises(ConfigError, match="head_sizes"):
        build_network("MS-CR@2", ["bpm"], head_sizes={"tag": 3})
    with pytest.raises(ConfigError, match="Invalid source"):
        build_network("MS-CR@2", ["Bad Name"])
    net = build_network("MS-CR@2", ["self", "bpm"])
    with pytest.raises(ConfigError, match="pair"):
        net(torch.zeros(2, 2, 216, 128), "self")
    with pytest.raises(ConfigError, match="no source"):
        net(torch.zeros(2, 2, 216, 128), "tag")


@pytest.mark.parametrize("shape", [(3, 16, 108, 128), (2, 64, 13, 16), (1, 4, 7, 5)])
def test_elementwise_pooling_equals_max_pool(shape):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    assert torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))


def test_conv_block_pools_before_the_relu_with_the_same_result():
    block = ConvBlock(2, 16, 5, stride=(2, 1)).eval()
    x = torch.randn(2, 2, 216, 128)
    with torch.no_grad():
        expected = torch.nn.functional.max_pool2d(torch.relu(block.bn(block.conv(x))), 2)
        assert torch.equal(block(x), expected)
        assert torch.equal(use_elementwise_pooling(block)(x), expected)

"""The MiniLM style prompt encoder (models.network.prompt): offline, normalised, and it groups paraphrases by
style."""

import pytest
import torch

from demo_game.styles import STYLES
from models.network.prompt import EMBED_DIM, PromptEncoder, nearest_style


@pytest.fixture(scope="module")
def encoder():
    return PromptEncoder.shared()


def test_loads_offline_and_embeds_unit_vectors(encoder, monkeypatch):
    """Guards against a silent download: the model must come from the installed package with the hub unreachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = PromptEncoder()
    e = fresh.encode(["snowy winter village", "neon night city"])
    assert e.shape == (2, EMBED_DIM) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(encoder.encode(["snowy winter village"])[0], e[0])


def test_paraphrases_land_closer_than_other_styles(encoder):
    """Every style's held-back paraphrases are nearer its trained prompts than any other style's: what lets a
    player type their own wording."""
    names = list(STYLES)
    centroids = torch.stack([torch.nn.functional.normalize(encoder.encode(list(STYLES[n].prompts)).mean(0), dim=0)
                             for n in names])
    for name in names:
        sims = encoder.encode(list(STYLES[name].heldout_prompts)) @ centroids.T  # (heldout, styles)
        assert (sims.argmax(1) == names.index(name)).all(), (name, sims)


def test_nearest_style_names_the_style_of_every_held_back_paraphrase(encoder):
    """What the engine reports as a prompt's look (StreamEngine.look): the game takes that style's sun for a prompt
    it does not know."""
    trained = {name: encoder.encode(list(style.prompts)) for name, style in STYLES.items()}
    for name, style in STYLES.items():
        for prompt in style.heldout_prompts:
            assert nearest_style(encoder.encode([prompt])[0], trained) == name, prompt


def test_rejects_a_bare_string(encoder):
    with pytest.raises(TypeError, match="list of prompts"):
        encoder.encode("snowy winter village")


def test_a_prompt_table_stands_in_for_the_encoder(encoder, tmp_path, monkeypatch):
    """A machine without the encoder package (a lent GPU machine) reads the embeddings of known prompts from a
    table written where the encoder runs: the same vectors, and one clear error for a prompt it lacks."""
    from models.network.prompt import PROMPT_TABLE_ENV, PromptEncoderError, PromptTable, write_prompt_table

    prompts = ["snowy winter village", "neon night city", "snowy winter village"]
    table = write_prompt_table(tmp_path / "prompts.safetensors", prompts, encoder)
    assert not list(tmp_path.glob("*.partial"))
    monkeypatch.setenv(PROMPT_TABLE_ENV, str(table))
    shared = PromptEncoder.shared()
    assert isinstance(shared, PromptTable)
    torch.testing.assert_close(shared.encode(prompts), encoder.encode(prompts))
    with pytest.raises(PromptEncoderError, match="has no embedding for 'autumn'"):
        shared.encode(["autumn"])
    (tmp_path / "broken.safetensors").write_bytes(b"not a table")
    with pytest.raises(PromptEncoderError, match="is not a prompt table"):
        PromptTable(tmp_path / "broken.safetensors")

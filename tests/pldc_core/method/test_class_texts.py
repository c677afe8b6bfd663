"""Class descriptions for CLIP's text tower: the file's checks, the fallback to the template, the averaging."""
import json

import pytest
import torch
import torch.nn.functional as F

from pldc_core.method.class_texts import ClassDescriptionsError, class_prompts, read_class_descriptions

NAMES = ["cat", "dog", "car"]


def _write(path, content) -> str:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_descriptions_and_the_template_fallback(tmp_path):
    path = _write(tmp_path / "d.json", {"cat": ["a small {} with whiskers", "a pet that purrs"]})
    descriptions = read_class_descriptions(path)
    assert descriptions == {"cat": ["a small {} with whiskers", "a pet that purrs"]}
    assert class_prompts(NAMES, "a photo of a {}.", descriptions) == [
        ["a small cat with whiskers", "a pet that purrs"], ["a photo of a dog."], ["a photo of a car."]]
    assert class_prompts(NAMES, "{}") == [["cat"], ["dog"], ["car"]]


@pytest.mark.parametrize("content, problem", [
    ('{"cat": ["a cat"', r"malformed JSON at line 1, column 17"),
    ('["cat"]', r"the top level must be a JSON object .* got list"),
    ("{}", r"no class is described"),
    ({"cat": []}, r"class 'cat': the list of descriptions is empty"),
    ({"cat": "a cat"}, r"class 'cat': expected a list of descriptions, got str"),
    ({"cat": ["a cat", "  "]}, r"class 'cat': description 1 must be non-empty text"),
    ({"cat": ["a cat", 3]}, r"class 'cat': description 1 must be non-empty text, got 3"),
])
def test_a_bad_file_is_named_with_its_problem(tmp_path, content, problem):
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(ClassDescriptionsError, match=problem) as err:
        read_class_descriptions(path)
    assert str(err.value).startswith(f"{path}: ")


def test_a_missing_file_and_unknown_class_names(tmp_path):
    with pytest.raises(ClassDescriptionsError, match=r"nowhere\.json: class descriptions file not found"):
        read_class_descriptions(tmp_path / "nowhere.json")
    with pytest.raises(ClassDescriptionsError) as err:
        class_prompts(NAMES, "{}", {"cat": ["x"], "kat": ["y"], "horse": ["z"]}, source="d.json")
    assert str(err.value).startswith("d.json: unknown class name(s) 'kat', 'horse'; the dataset's classes are 'cat'")


def test_the_config_reads_the_file_unless_it_is_a_saved_run_config(tmp_path):
    from pldc_core.config import ConfigError, from_dict, load_config

    good = _write(tmp_path / "good.json", {"dog": ["a dog"]})
    assert load_config(None, [f"pldc.class_descriptions={good}"]).pldc.class_descriptions == good
    bad = _write(tmp_path / "bad.json", {"dog": []})
    with pytest.raises(ConfigError, match=r"pldc\.class_descriptions: .*bad\.json: class 'dog': the list") as err:
        load_config(None, [f"pldc.class_descriptions={bad}"])
    assert err.value.key == "pldc.class_descriptions"
    with pytest.raises(ConfigError, match="class descriptions file not found"):
        load_config(None, [f"pldc.class_descriptions={tmp_path / 'gone.json'}"])
    # a run folder's config stays readable where the file is gone (eval, report)
    saved = from_dict({"config_version": 2, "pldc": {"class_descriptions": str(tmp_path / "gone.json")}}, saved=True)
    assert saved.pldc.class_descriptions.endswith("gone.json")


def test_a_class_embedding_is_the_normalised_mean_of_its_descriptions(tmp_path):
    from pldc_core.method.dicc import ClipClassifier
    from tests.tiny import tiny_clip_weights

    tiny_clip_weights(tmp_path, "pldc-tiny-texts-clip")
    clip = ClipClassifier.load("pldc-tiny-texts-clip", allow_random=True)
    clip.set_categories(NAMES, template="a photo of a {}.",
                        descriptions={"cat": ["a small cat", "a pet that purrs", "whiskers"]})

    def one(text):
        with torch.no_grad():
            return F.normalize(clip.model.encode_text(clip.tokenizer([text])).float(), dim=-1)[0]

    cat = F.normalize(one("a small cat") + one("a pet that purrs") + one("whiskers"), dim=0)
    assert torch.allclose(clip.text_embeddings[0], cat, atol=1e-5)
    assert torch.allclose(clip.text_embeddings[1], one("a photo of a dog."), atol=1e-5)  # the template
    assert torch.allclose(clip.text_embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ClassDescriptionsError, match=r"my\.json: unknown class name\(s\) 'cta'"):
        clip.set_categories(NAMES, descriptions={"cta": ["x"]}, source="my.json")

import pytest

from rmbg_client.errors import InvalidInputError
from rmbg_client.tasks import parse_task

BASE = {"taskType": "removeBackground", "taskUUID": "0b5b3a4e-8c7e-4b38-9b7a-1a2b3c4d5e6f",
        "inputs": {"image": "https://example.invalid/x.jpg"}}


def test_task_fields_map_to_options():
    image, options, output_type, endpoint = parse_task(
        {**BASE, "settings": {"rgba": [255, 255, 255, 0], "postProcessMask": True},
         "outputFormat": "WEBP", "outputQuality": 80, "outputType": "dataURI"})
    assert image == "https://example.invalid/x.jpg"
    assert options == {"rgba": [255, 255, 255, 0], "postProcessMask": True, "outputFormat": "WEBP",
                       "outputQuality": 80}
    assert output_type == "dataURI" and endpoint is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"taskType": "imageInference"}, "taskType"),
        ({"taskUUID": ""}, "taskUUID"),
        ({"inputs": {}}, "inputs.image"),
        ({"outputType": "file"}, "outputType"),
        ({"outputType": "URL"}, "uploadEndpoint"),
        ({"settings": [1]}, "settings"),
        ({"colour": 1}, "colour: unknown task field"),
    ],
)
def test_bad_tasks(change, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        parse_task({**BASE, **change})

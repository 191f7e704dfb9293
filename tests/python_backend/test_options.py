import json

import pytest

from rmbg_backend.errors import RequestError
from rmbg_backend.options import ALLOWED_KEYS, Options, parse_options


def test_empty_and_missing_mean_defaults():
    assert parse_options(None) == Options()
    assert parse_options(b"") == Options()
    assert parse_options(b"  {} ") == Options()


def test_all_keys_parse_and_normalise():
    o = parse_options(
        b'{"outputFormat":"jpeg","outputQuality":80,"returnOnlyMask":true,"rgba":[1,2,3,4],'
        b'"alphaMatting":true,"alphaMattingForegroundThreshold":200,'
        b'"alphaMattingBackgroundThreshold":20,"alphaMattingErodeSize":5,'
        b'"postProcessMask":true,"preserveAlpha":true}'
    )
    assert o == Options("JPG", 80, True, (1, 2, 3, 4), True, 200, 20, 5, True, True)
    assert Options.from_dict(json.loads(json.dumps(o.to_dict()))) == o  # as META travels


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (b"[1]", "OPTIONS", "JSON object"),
        (b"{bad", "OPTIONS", "not valid JSON"),
        (b"\xff\xfe", "OPTIONS", "UTF-8"),
        (b'{"outputQuality": 5}', "outputQuality", "20..99"),
        (b'{"outputQuality": 50.5}', "outputQuality", "integer"),
        (b'{"outputQuality": true}', "outputQuality", "integer"),
        (b'{"rgba": [1, 2, 3]}', "rgba", "4 integers"),
        (b'{"rgba": [1, 2, 3, 256]}', "rgba", "0..255"),
        (b'{"alphaMattingForegroundThreshold": 300}', "alphaMattingForegroundThreshold", "1..255"),
        (b'{"outputFormat": "GIF"}', "outputFormat", "PNG, WEBP, JPG"),
        (b'{"returnOnlyMask": "yes"}', "returnOnlyMask", "true or false"),
        (b'{"outputFromat": "PNG"}', "outputFromat", "unknown option"),
    ],
)
def test_bad_options_name_the_key_and_the_accepted_values(raw, field, fragment):
    with pytest.raises(RequestError) as info:
        parse_options(raw)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_unknown_key_message_lists_allowed_keys():
    with pytest.raises(RequestError) as info:
        parse_options(b'{"foo": 1}')
    assert all(k in str(info.value) for k in ALLOWED_KEYS)


HUGE = "9" * 5000  # over Python's 4300-digit limit for int()


@pytest.mark.parametrize(("raw", "field", "fragment"), [
    (f'{{"outputQuality": {HUGE}}}', "outputQuality", "must be in 20..99, got an integer of 5,000 digits"),
    (f'{{"alphaMattingErodeSize": -{HUGE}}}', "alphaMattingErodeSize", "got an integer of 5,000 digits"),
    (f'{{"rgba": [1, {HUGE}, 3, 4]}}', "rgba", "g must be in 0..255, got an integer of 5,000 digits"),
    (f'{{"postProcessMask": {HUGE}}}', "postProcessMask", "true or false"),
    (f'{{"outputQuality": {HUGE}.0}}', "outputQuality", "must be an integer"),
    (HUGE, "OPTIONS", "JSON object"),
    (f'[{HUGE}]', "OPTIONS", "JSON object"),
])
def test_huge_integers_are_request_errors_naming_the_key(raw, field, fragment):
    with pytest.raises(RequestError) as info:
        parse_options(raw.encode())
    assert info.value.field == field and fragment in info.value.message
    assert len(str(info.value)) < 300


def test_integers_up_to_twenty_digits_are_still_numbers():
    with pytest.raises(RequestError, match="got 12345678901234567890"):
        parse_options(b'{"outputQuality": 12345678901234567890}')
    with pytest.raises(RequestError, match="got an integer of 21 digits"):
        parse_options(b'{"outputQuality": 123456789012345678901}')


@pytest.mark.parametrize("raw", [
    '{"outputFormat": "' + "x" * 60000 + '"}',
    '{"' + "k" * 60000 + '": 1}',
    '{"rgba": "' + "r" * 60000 + '"}',
    '{"returnOnlyMask": [' + "1," * 20000 + '1]}',
])
def test_error_messages_stay_short_whatever_was_sent(raw):
    with pytest.raises(RequestError) as info:
        parse_options(raw.encode())
    assert len(str(info.value)) < 400


def test_shaping_keys_parse_and_normalise():
    o = parse_options(json.dumps({
        "crop": True, "cropMargin": "30px", "outputSize": [800, 600], "scale": 0.8, "position": ["25%", 100],
        "shadow": True, "shadowOpacity": 0.3, "shadowBlur": 15, "shadowOffset": [-4, 12], "refineForeground": True,
        "outputFormat": "auto"}))
    assert (o.crop, o.cropMargin, o.outputSize, o.scale, o.position) == (True, 30, (800, 600), 0.8, (25.0, 100.0))
    assert (o.shadow, o.shadowOpacity, o.shadowBlur, o.shadowOffset) == (True, 0.3, 15.0, (-4, 12))
    assert o.refineForeground and o.outputFormat == "AUTO"
    assert parse_options(b'{"cropMargin": "12.5%"}').cropMargin == "12.5%"
    assert parse_options(b'{"position": "centre"}').position == "center"
    assert Options.from_dict(json.loads(json.dumps(o.to_dict()))) == o  # as META travels


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"crop": 1}, "crop", "true or false"),
        ({"cropMargin": -1}, "cropMargin", "0..10000"),
        ({"cropMargin": "150%"}, "cropMargin", "0..100"),
        ({"cropMargin": "ten"}, "cropMargin", "percentage 0..100"),
        ({"outputSize": [0, 10]}, "outputSize", "width must be in 1..65500"),
        ({"outputSize": [10]}, "outputSize", "2 integers [width, height]"),
        ({"outputSize": [10.5, 10]}, "outputSize", "integer"),
        ({"scale": 0}, "scale", "0..1 (above 0)"),
        ({"scale": 1.5}, "scale", "0..1"),
        ({"scale": "half"}, "scale", "a number"),
        ({"position": "top"}, "position", "\"center\", \"original\" or [x%, y%]"),
        ({"position": [50, 120]}, "position", "0..100"),
        ({"shadowOpacity": 2}, "shadowOpacity", "0..1"),
        ({"shadowBlur": -1}, "shadowBlur", "0..500"),
        ({"shadowOffset": [1, 99999]}, "shadowOffset", "dy must be in -5000..5000"),
        ({"refineForeground": "yes"}, "refineForeground", "true or false"),
    ],
)
def test_bad_shaping_options_name_the_key_and_the_range(raw, field, fragment):
    with pytest.raises(RequestError) as info:
        parse_options(json.dumps(raw))
    assert info.value.field == field
    assert fragment in str(info.value)


def test_roi_and_max_pixels():
    opts = parse_options(json.dumps({"roi": [10, "5%", "100%", 400], "maxPixels": 250000}))
    assert opts.roi == (10, "5%", "100%", 400) and opts.maxPixels == 250000
    assert parse_options(opts.to_json()) == opts
    for bad, fragment in (({"roi": [1, 2, 3]}, "list of 4 values"), ({"roi": [1, 2, 3, "x%"]}, "percentage"),
                          ({"roi": [1, 2, 3, -4]}, "pixels 0..65500"), ({"maxPixels": 0}, "1..1000000000"),
                          ({"maxPixels": 1.5}, "integer")):
        with pytest.raises(RequestError, match=fragment):
            parse_options(json.dumps(bad))


def test_to_json_renders_only_what_differs_and_parses_back():
    opts = parse_options(json.dumps({"outputFormat": "webp", "rgba": [1, 2, 3, 4], "cropMargin": "10%",
                                     "position": [50, 100], "crop": True}))
    assert json.loads(opts.to_json()) == {"outputFormat": "WEBP", "rgba": [1, 2, 3, 4], "crop": True,
                                          "cropMargin": "10%", "position": [50.0, 100.0]}
    assert parse_options(opts.to_json()) == opts and parse_options(Options().to_json()) == Options()


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_high_quality_is_a_strict_bool(value):
    assert parse_options(b'{"highQuality": true}').highQuality is True
    assert parse_options(b"{}").highQuality is False
    with pytest.raises(RequestError) as info:
        parse_options(json.dumps({"highQuality": value}))
    assert info.value.field == "highQuality" and "must be true or false" in str(info.value)

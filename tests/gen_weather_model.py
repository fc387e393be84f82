"""Write sql/weather_model.safetensors, the README's example of metadata `output_names`: a GRU over two features
(temperature, humidity) whose two outputs are named, so results are JSON objects, and a key of its own (`units`) that rnn_info lists under warnings. The weights are random (seeded),
not trained: the model shows the format, not a forecast.

    /usr/bin/python3 tests/gen_weather_model.py      (no torch needed; a rerun writes identical bytes)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


def blob():
    return models.recurrent("gru", 2, 6, head=2, seed=2024, prefix="rnn.", scale=0.3, metadata={
        "description": "example: temperature and humidity, next reading (random weights)",
        "output_names": json.dumps(["temp", "humidity"]),
        "input_mean": "[20, 60]", "input_std": "[2, 10]",
        "output_mean": "[20, 60]", "output_std": "[2, 10]",
        "units": json.dumps({"temp": "C", "humidity": "%"}),     # a user key: kept, and listed in warnings
    })


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sql", "weather_model.safetensors")
    with open(out, "wb") as f:
        f.write(blob())
    print(out)

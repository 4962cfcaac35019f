#!/bin/sh
# a module folder without module.yaml

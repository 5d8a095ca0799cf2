#!/bin/sh
handoff-testsvc wait --exit-code 7

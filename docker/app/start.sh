#!/bin/sh
handoff-testsvc wait

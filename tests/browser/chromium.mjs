// SPDX-License-Identifier: MIT
// The browser every tests/browser test drives: Debian's chromium (or
// $CHROMIUM) through playwright-core, headless, without the sandbox
// (which needs privileges a test run does not have).
import { chromium } from 'playwright-core';

export function launchChromium() {
	return chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		args: ['--no-sandbox'],
	});
}

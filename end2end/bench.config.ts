import config from "./playwright.config";

// The benchmarks (bench/scan-page.sh): the test suite's servers and browser, another folder.
export default { ...config, testDir: "./bench", testMatch: "**/*.bench.ts", timeout: 900_000 };

"""Print the countable closing line (`tests: N passed, N failed, N skipped`) from a pytest junit xml file."""
import sys, xml.etree.ElementTree as ET

def main(path):
    try: root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"could not read test results {path}: {e}"); print("tests: 0 passed, 1 failed"); return
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    print(f"tests: {total - failed - skipped} passed, {failed} failed, {skipped} skipped")

if __name__ == "__main__": main(sys.argv[1])

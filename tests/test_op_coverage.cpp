// No op without an op test: walks the op table (kernels/ops.hpp) and requires, for every op, a
// parameterised case in one of the op-test programs (tests/test_ops*.cpp) comparing the CPU op with
// its reference and one comparing the CUDA op with the CPU. A case belongs to an op by its name,
// which begins with the op's table name (the longest that fits, so max_unpool_backward_... is not
// a max_unpool case).
//
// The op-test programs are found beside this one and asked for their tests with
// --gtest_list_tests, so an op added to the table without a case in any of them fails here.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kernels/ops.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

std::vector<std::string> op_names() {
#define CUAE_OP_NAME(name, A) #name,
  return {CUAE_OP_TABLE(CUAE_OP_NAME)};
#undef CUAE_OP_NAME
}

bool starts_with_token(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0 &&
         (s.size() == prefix.size() || s[prefix.size()] == '_');
}

// The op a case name stands for: the longest op name it begins with ("" for none).
std::string op_of_case(const std::string& case_name, const std::vector<std::string>& ops) {
  std::string best;
  for (const auto& op : ops)
    if (starts_with_token(case_name, op) && op.size() > best.size()) best = op;
  return best;
}

struct ListedTest {
  std::string full;  // Suite.Test/param (or Suite.Test)
  std::string param; // the case name after the last '/' of the test name, empty if none
};

// The tests of a gtest program, from its --gtest_list_tests output.
std::vector<ListedTest> list_tests(const fs::path& program) {
  const std::string cmd = "'" + program.string() + "' --gtest_list_tests 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  std::vector<ListedTest> out;
  std::string suite;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) {
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    const auto hash = line.find("  #");
    if (hash != std::string::npos) line.resize(hash);
    if (line[0] != ' ') {
      suite = line;  // "Prefix/Suite." or "Suite."
      continue;
    }
    const std::string test = line.substr(line.find_first_not_of(' '));
    const auto slash = test.rfind('/');
    out.push_back({suite + test, slash == std::string::npos ? std::string() : test.substr(slash + 1)});
  }
  pclose(p);
  return out;
}

std::vector<fs::path> op_test_programs() {
  const fs::path self = fs::read_symlink("/proc/self/exe");
  std::vector<fs::path> progs;
  for (const auto& e : fs::directory_iterator(self.parent_path())) {
    const std::string name = e.path().filename().string();
    if (name.rfind("test_ops", 0) == 0 && name.find('.') == std::string::npos && e.is_regular_file() &&
        access(e.path().c_str(), X_OK) == 0)
      progs.push_back(e.path());
  }
  return progs;
}

TEST(OpCoverage, EveryOpHasCpuAndCudaCases) {
  const std::vector<std::string> ops = op_names();
  ASSERT_GT(ops.size(), 10u);
  const std::vector<fs::path> progs = op_test_programs();
  ASSERT_GE(progs.size(), 5u) << "the op-test programs (test_ops*) were not found beside this program";
  std::map<std::string, std::set<std::string>> cuda_cases, cpu_cases;  // op -> example tests
  std::size_t listed = 0;
  for (const fs::path& prog : progs) {
    const auto tests = list_tests(prog);
    EXPECT_FALSE(tests.empty()) << prog << " listed no tests";
    listed += tests.size();
    for (const ListedTest& t : tests) {
      if (t.param.empty()) continue;
      const bool cuda = t.full.find("Cuda") != std::string::npos;
      const std::string op = op_of_case(t.param, ops);
      if (!op.empty()) (cuda ? cuda_cases : cpu_cases)[op].insert(t.full);
    }
  }
  ASSERT_GT(listed, 0u);
  std::string missing;
  for (const std::string& op : ops) {
    if (!cpu_cases.count(op)) missing += "  " + op + ": no CPU case\n";
    if (!cuda_cases.count(op)) missing += "  " + op + ": no CUDA case\n";
  }
  EXPECT_TRUE(missing.empty()) << "ops of kernels/ops.hpp without op-test cases (a case's name begins with its op's "
                                  "name; see tests/test_op_coverage.cpp):\n"
                               << missing;
  for (const std::string& op : ops)
    if (cuda_cases.count(op))
      ::testing::Test::RecordProperty("cuda_cases " + op, static_cast<int>(cuda_cases[op].size()));
}

TEST(OpCoverage, CaseNamesMapToTheLongestOp) {
  const std::vector<std::string> ops = op_names();
  EXPECT_EQ(op_of_case("max_unpool_backward_n2_h5_acc", ops), "max_unpool_backward");
  EXPECT_EQ(op_of_case("max_unpool_n2_h5_acc", ops), "max_unpool");
  EXPECT_EQ(op_of_case("rbm_cd_workspace_m7_nv13_nh5", ops), "rbm_cd_workspace");
  EXPECT_EQ(op_of_case("loss_bce_n7", ops), "loss");
  EXPECT_EQ(op_of_case("lossy_n7", ops), "");
}

}  // namespace
}  // namespace cuae

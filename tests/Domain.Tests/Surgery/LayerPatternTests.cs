using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Tests.Surgery;

public sealed class LayerPatternTests
{
    [Theory]
    [InlineData("fc1", "fc1", true)]
    [InlineData("fc1", "fc10", false)]
    [InlineData("fc*", "fc1", true)]
    [InlineData("fc*", "fc", true)]
    [InlineData("*", "", true)]
    [InlineData("**", "conv", true)]
    [InlineData("*.weight", "conv1.weight", true)]
    [InlineData("*.weight", "conv1.bias", false)]
    [InlineData("c*v*1", "conv1", true)]
    [InlineData("c*v*1", "conv2", false)]
    [InlineData("a*a", "a", false)]
    [InlineData("a*a", "aa", true)]
    [InlineData("*ab*ab*", "xabyab", true)]
    [InlineData("*ab*ab*", "xaby", false)]
    [InlineData("FC*", "fc1", false)]
    [InlineData("fc.?", "fc.1", false)]
    [InlineData("fc.?", "fc.?", true)]
    [InlineData("fc[12]", "fc[12]", true)]
    [InlineData("fc[12]", "fc1", false)]
    public void MatchesStarsAsAnyRunAndEverythingElseLiterally(string pattern, string name, bool matches) =>
        Assert.Equal(matches, LayerPattern.IsMatch(pattern, name));

    [Fact]
    public async Task APatternThatMadeTheRegexBacktrackExponentiallyAnswersAtOnce()
    {
        // The probe's shape: stars between repeated letters and a last character the name lacks, against the longest
        // name a model may carry. The regex the glob used to become did not finish this in minutes.
        var layer = new LayerSettings { Pattern = string.Concat(Enumerable.Repeat("*a", 40)) + "!" };
        var name = new string('a', 1024);

        var match = Task.Run(() => layer.Matches(name, name + ".weight"));

        // A generous bound that only a hang exceeds (the WaitAsync throws TimeoutException then); not a timing.
        Assert.False(await match.WaitAsync(TimeSpan.FromSeconds(30)));
    }
}

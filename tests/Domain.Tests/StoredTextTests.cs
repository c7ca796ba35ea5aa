namespace SurgeryService.Domain.Tests;

public sealed class StoredTextTests
{
    [Theory]
    [InlineData("model\u202Excod.onnx", "U+202E")] // right-to-left override
    [InlineData("\u2066mlp\u2069", "U+2066")] // left-to-right isolate
    [InlineData("ml\u200Bp", "U+200B")] // zero-width space
    [InlineData("ml\u200Dp", "U+200D")] // zero-width joiner
    [InlineData("\uFEFFmlp", "U+FEFF")] // byte order mark
    [InlineData("mlp\U000E0041", "U+E0041")] // a tag character, outside the BMP
    public void InvisibleFormattingCharactersAreRefusedWithTheirCodePoint(string text, string codePoint)
    {
        var problem = StoredText.Problem(text, 256);

        Assert.NotNull(problem);
        Assert.Contains($"invisible formatting character {codePoint}", problem);
    }

    [Theory]
    [InlineData("lenet-300-100 v2")]
    [InlineData("réseau ✓ 模型")]
    [InlineData("emoji \U0001F600")]
    [InlineData("שכבה")] // right-to-left script without any override
    public void VisibleTextOfAnyScriptIsAccepted(string text) => Assert.Null(StoredText.Problem(text, 256));

    [Fact]
    public void ControlCharactersAndLoneSurrogatesAreStillRefused()
    {
        Assert.Contains("control character U+0000", StoredText.Problem("a\0b", 256));
        Assert.Contains("half of a surrogate pair", StoredText.Problem("a\uD800b", 256));
    }
}

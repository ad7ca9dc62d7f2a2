using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tests.Transport;

public sealed class MigrationTokenTests
{
    [Fact]
    public void Create_IsRandom_AndRoundTripsThroughText()
    {
        var a = MigrationToken.Create();
        var b = MigrationToken.Create();
        string text = a.ToString();

        Assert.Equal(43, text.Length);
        Assert.DoesNotContain('=', text);
        Assert.DoesNotContain('+', text);
        Assert.DoesNotContain('/', text);
        Assert.NotEqual(text, b.ToString());
        Assert.Equal(a.Secret.ToArray(), MigrationToken.Parse(text).Secret.ToArray());
        Assert.Equal(text, MigrationToken.Parse($"  {text}\n").ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("short")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    public void Parse_RejectsJunk(string text)
    {
        var error = Assert.Throws<EngineException>(() => MigrationToken.Parse(text));
        Assert.Equal("InvalidMigrationToken", error.ErrorId);
        Assert.Equal(ErrorKind.InvalidArgument, error.Kind);
    }
}

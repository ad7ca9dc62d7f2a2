using CsCheck;
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

    [Theory]
    [InlineData(0x00, 1)] // all bytes equal
    [InlineData(0xFF, 1)]
    [InlineData(0x00, 15)] // 15 distinct values: refused
    public void Parse_RefusesSecretsThatAreNotRandom(byte first, int distinct)
    {
        byte[] secret = [.. Enumerable.Range(0, 32).Select(i => (byte)(first + (i % distinct)))];

        var error = Assert.Throws<EngineException>(() => MigrationToken.Parse(Text(secret)));
        Assert.Equal("InvalidMigrationToken", error.ErrorId);
        Assert.Equal(ErrorKind.InvalidArgument, error.Kind);
        Assert.Contains("Receive-KvmVM printed", error.Message);
    }

    [Fact]
    public void Parse_AcceptsSixteenDistinctBytes() =>
        Assert.NotNull(MigrationToken.Parse(Text([.. Enumerable.Range(0, 32).Select(i => (byte)(i % 16))])));

    [Fact]
    public void Create_IsNeverRefused_AndRoundTrips() =>
        Gen.Int.Sample(_ =>
        {
            var token = MigrationToken.Create();
            Assert.Equal(token.Secret.ToArray(), MigrationToken.Parse(token.ToString()).Secret.ToArray());
        }, iter: 10_000);

    [Fact]
    public void Parse_AcceptsExactlyTheSecretsWithSixteenDistinctBytes() =>
        // Bytes drawn from a small range so both sides of the threshold are well covered.
        Gen.Byte[0, 24].Array[32].Sample(secret =>
        {
            bool random = secret.Distinct().Count() >= 16;
            try
            {
                Assert.Equal(secret, MigrationToken.Parse(Text(secret)).Secret.ToArray());
                Assert.True(random);
            }
            catch (EngineException ex) when (ex.ErrorId == "InvalidMigrationToken")
            {
                Assert.False(random);
            }
        }, iter: 10_000);

    private static string Text(byte[] secret) => Convert.ToBase64String(secret).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
